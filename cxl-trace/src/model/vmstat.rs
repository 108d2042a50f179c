//! `/proc/vmstat`: parsing, snapshots and deltas (pure apart from [`read`]).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The counters cxl-trace compares its own counts with, in the order reports show them.
pub const COUNTERS: &[&str] = &[
    "pgfault",
    "pgmajfault",
    "pgmigrate_success",
    "pgmigrate_fail",
    "thp_migration_success",
    "thp_migration_fail",
    "thp_migration_split",
    "numa_pages_migrated",
    "numa_hint_faults",
    "numa_hint_faults_local",
    "numa_pte_updates",
    "pgpromote_success",
    "pgpromote_candidate",
    "pgdemote_kswapd",
    "pgdemote_direct",
    "pgdemote_khugepaged",
    "pgdemote_proactive",
    "compact_migrate_scanned",
    "compact_success",
];

/// A snapshot of /proc/vmstat: counter name to value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vmstat(pub BTreeMap<String, u64>);

impl Vmstat {
    /// Parses the text of /proc/vmstat. Malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    Some((k.to_string(), v.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    /// A counter, if this kernel has it.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.get(name).copied()
    }

    /// `self - earlier` for the [`COUNTERS`] both snapshots have (saturating: counters do not go
    /// backwards, but a wrapped or reset one must not panic).
    pub fn delta(&self, earlier: &Vmstat) -> BTreeMap<String, u64> {
        COUNTERS
            .iter()
            .filter_map(|&c| Some((c.to_string(), self.get(c)?.saturating_sub(earlier.get(c)?))))
            .collect()
    }
}

/// Reads /proc/vmstat.
pub fn read() -> Result<Vmstat> {
    std::fs::read_to_string("/proc/vmstat")
        .map(|t| Vmstat::parse(&t))
        .map_err(|e| Error::io("/proc/vmstat", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_delta() {
        let a = Vmstat::parse("nr_free_pages 10\npgfault 100\npgmigrate_success 5\nbogus\nx y\n");
        let b = Vmstat::parse("nr_free_pages 3\npgfault 250\npgmigrate_success 5\n");
        assert_eq!(a.get("pgfault"), Some(100));
        assert_eq!(a.get("bogus"), None);
        let d = b.delta(&a);
        assert_eq!(d.get("pgfault"), Some(&150));
        assert_eq!(d.get("pgmigrate_success"), Some(&0));
        // not in COUNTERS
        assert_eq!(d.get("nr_free_pages"), None);
        // absent on this "kernel"
        assert_eq!(d.get("pgpromote_success"), None);
    }

    #[test]
    fn delta_saturates() {
        let a = Vmstat::parse("pgfault 100\n");
        let b = Vmstat::parse("pgfault 7\n");
        assert_eq!(b.delta(&a).get("pgfault"), Some(&0));
    }
}
