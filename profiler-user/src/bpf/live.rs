//! Draining the CPU counts while sampling goes on, for `stackwatch top`:
//! each refresh takes what was counted since the previous one.
//!
//! A capture drains its maps once, after the window closed; a live view
//! drains them every refresh with the window open, so it deletes what it
//! read (an increment that lands between the read and the delete of its
//! key is lost: a sample in a few thousand at most, on a key just read),
//! and empties the stack map when it fills, since stacks are stored once
//! for the whole session (a stack deleted before its count is read shows
//! as `[missing stack]`, once).

use anyhow::Result;
use aya::maps::{HashMap, MapData};
use profiler_common::{
    SampleKey, ShortStackRecord, StackRecord, MAP_COUNTS, MAP_SHORT_STACKS, MAP_STACKS, SHORT_STACKS_MAP_ENTRIES,
    STACKS_MAP_ENTRIES,
};

use super::drain::{self, Counted, RawCapture};
use super::Loader;

/// Share of a stack map beyond which a live view empties it.
const STACKS_HIGH_WATER: f64 = 0.75;

impl Loader {
    /// The CPU samples counted since the last call, with their stacks and
    /// the kernel's counters (cumulative since the maps were cleared).
    pub(crate) fn take_cpu_counts(&mut self) -> Result<RawCapture> {
        let entries = self.map_entries::<SampleKey, u64>(MAP_COUNTS)?;
        {
            let mut map: HashMap<&mut MapData, SampleKey, u64> = HashMap::try_from(self.map_mut(MAP_COUNTS)?)?;
            for (key, _) in &entries {
                // Already gone is fine: nothing else deletes, but a
                // failed delete only means the entry is counted again.
                let _ = map.remove(key);
            }
        }
        let counts =
            entries.into_iter().map(|(key, count)| Counted { key, count, weight: 0, extra: 0, held: [0; 2] }).collect();
        let capture = drain::capture(self, counts)?;
        self.trim_stacks()?;
        Ok(capture)
    }

    /// Empties each stack map once it is past [`STACKS_HIGH_WATER`].
    fn trim_stacks(&mut self) -> Result<()> {
        self.trim::<StackRecord>(MAP_STACKS, STACKS_MAP_ENTRIES)?;
        self.trim::<ShortStackRecord>(MAP_SHORT_STACKS, SHORT_STACKS_MAP_ENTRIES)
    }

    fn trim<V: aya::Pod>(&mut self, name: &str, capacity: u32) -> Result<()> {
        let mut map: HashMap<&mut MapData, u64, V> = HashMap::try_from(self.map_mut(name)?)?;
        let keys: Vec<u64> = map.keys().filter_map(Result::ok).collect();
        if (keys.len() as f64) < f64::from(capacity) * STACKS_HIGH_WATER {
            return Ok(());
        }
        for key in keys {
            let _ = map.remove(&key);
        }
        Ok(())
    }
}

/// `take_cpu_counts` needs a window that stays open: this long.
pub(crate) const LIVE_WINDOW: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);
