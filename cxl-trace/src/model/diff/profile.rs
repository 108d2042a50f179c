//! What `diff` needs of one recording, read in one streaming pass: the whole-run report,
//! latency histograms by tier rank and class, and per-interval series of every count.
//!
//! Tiers are named by rank, not by node or tier id, so machines with other numbering compare:
//! the fastest tier is `fast`, the slowest `slow`, those between `mid1`, `mid2`, ...; a tier
//! that appears only later (a hot-added node) keeps its id (`tier22`).

use std::{collections::BTreeMap, path::Path};

use hdrhistogram::Histogram;

use crate::{
    error::Result, model::hist::new_histogram, model::playback::Intervals,
    model::recording::Header, model::sample::Churn, model::topology::Topology,
};

/// Page size used for "GB touched" (faults x 4 KiB).
pub const PAGE: f64 = 4096.0;

/// Tier id -> rank label.
pub fn tier_labels(t: &Topology) -> BTreeMap<u32, String> {
    let mut ids: Vec<u32> = t.tiers.iter().map(|t| t.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let n = ids.len();
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| {
            let label = match i {
                0 => "fast".to_string(),
                i if i + 1 == n => "slow".to_string(),
                i => format!("mid{i}"),
            };
            (id, label)
        })
        .collect()
}

/// One recording, reduced.
pub struct Profile {
    /// The file.
    pub path: String,
    /// Its header.
    pub header: Header,
    /// `report --format json` of it.
    pub summary: crate::model::schema::Window,
    /// Tier id -> label.
    pub labels: BTreeMap<u32, String>,
    /// Fault latency (ns) by (tier label, class name); class `all` merges the classes.
    pub latency: BTreeMap<(String, String), Histogram<u64>>,
    /// Ping-pong residency (ns).
    pub residency: Histogram<u64>,
    /// Interval lengths, s.
    pub dt: Vec<f64>,
    /// Interval ends, s since the start.
    pub t: Vec<f64>,
    /// Per-interval counts by metric id (`promotions`, `migrated:reason=compaction`, ...).
    pub series: BTreeMap<String, Vec<f64>>,
    /// Events dropped in the whole run.
    pub drops: u64,
}

impl Profile {
    /// The label of a tier id (`unknown` for unattributed).
    pub fn label(&self, tier: Option<u32>) -> String {
        label_of(&self.labels, tier)
    }

    /// A per-interval series (zeros when the metric never occurred).
    pub fn series(&self, id: &str) -> Vec<f64> {
        self.series
            .get(id)
            .cloned()
            .unwrap_or_else(|| vec![0.0; self.dt.len()])
    }

    /// GB touched per interval (faults x 4 KiB).
    pub fn gb_touched(&self) -> Vec<f64> {
        self.series("faults")
            .iter()
            .map(|f| f * PAGE / f64::from(1u32 << 30))
            .collect()
    }

    /// Recorded seconds.
    pub fn seconds(&self) -> f64 {
        self.dt.iter().sum()
    }

    /// Events read from the recording.
    pub fn events(&self) -> u64 {
        self.summary.recording.as_ref().map_or(0, |r| r.events)
    }
}

fn label_of(labels: &BTreeMap<u32, String>, tier: Option<u32>) -> String {
    match tier {
        None => "unknown".into(),
        Some(id) => labels
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("tier{id}")),
    }
}

fn push(series: &mut BTreeMap<String, Vec<f64>>, i: usize, id: String, v: f64) {
    let s = series.entry(id).or_default();
    if s.len() <= i {
        s.resize(i + 1, 0.0);
    }
    s[i] += v;
}

/// Reads `path` into a profile.
pub fn read(path: &Path) -> Result<Profile> {
    let mut src = Intervals::open(path)?;
    let header = src.header.clone();
    let labels = tier_labels(&header.topology);
    let mut series = BTreeMap::new();
    let (mut dt, mut t) = (Vec::new(), Vec::new());
    while let Some(iv) = src.next_interval()? {
        let i = dt.len();
        dt.push(iv.dt);
        t.push(iv.t);
        let c = &Churn::of(&iv.totals);
        for (id, v) in [
            ("faults", iv.totals.faults.total),
            ("promotions", c.promoted()),
            ("demotions", c.demoted()),
            ("migrated", c.migrated),
            ("migration_failed", c.failed),
            ("pingpong", c.bounces),
            ("hint_faults", c.hint_faults),
            ("refused", c.refused.values().sum()),
        ] {
            push(&mut series, i, id.into(), v as f64);
        }
        for (cause, v) in &c.promotions {
            push(
                &mut series,
                i,
                format!("promotions:cause={cause}"),
                *v as f64,
            );
        }
        for (cause, v) in &c.demotions {
            push(
                &mut series,
                i,
                format!("demotions:cause={cause}"),
                *v as f64,
            );
        }
        for (reason, v) in &c.by_reason {
            push(
                &mut series,
                i,
                format!("migrated:reason={reason}"),
                *v as f64,
            );
        }
        for (cause, v) in &c.refused {
            push(&mut series, i, format!("refused:cause={cause}"), *v as f64);
        }
        for ((from, to), v) in &c.pairs {
            let pair = format!("{}->{}", label_of(&labels, *from), label_of(&labels, *to));
            push(&mut series, i, format!("pages:pair={pair}"), *v as f64);
        }
    }
    let n = dt.len();
    for s in series.values_mut() {
        s.resize(n, 0.0);
    }
    // The same pass ends with the report (which closes the last, partial interval), so the
    // run's histograms below hold every event.
    let summary = src.report(10)?;
    let run = src.agg().run();
    let mut latency: BTreeMap<(String, String), Histogram<u64>> = BTreeMap::new();
    for ((tier, class), h) in &run.tiers.latency.by {
        let tier = label_of(&labels, *tier);
        for class in [class.name(), "all"] {
            let _ = latency
                .entry((tier.clone(), class.to_string()))
                .or_insert_with(new_histogram)
                .add(h);
        }
    }
    let residency = run.tiers.pingpong.residency.clone();
    let drops = summary.drops.total;
    Ok(Profile {
        path: path.display().to_string(),
        header,
        summary,
        labels,
        latency,
        residency,
        dt,
        t,
        series,
        drops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::topology::Tier;

    #[test]
    fn tiers_are_named_by_rank() {
        let mut t = Topology {
            tiers: vec![
                Tier {
                    id: 22,
                    nodes: vec![2],
                },
                Tier {
                    id: 4,
                    nodes: vec![0],
                },
            ],
            ..Topology::default()
        };
        let l = tier_labels(&t);
        assert_eq!(l[&4], "fast");
        assert_eq!(l[&22], "slow");
        t.tiers.push(Tier {
            id: 10,
            nodes: vec![1],
        });
        let l = tier_labels(&t);
        assert_eq!(
            (l[&4].as_str(), l[&10].as_str(), l[&22].as_str()),
            ("fast", "mid1", "slow")
        );
        assert_eq!(label_of(&l, None), "unknown");
        assert_eq!(label_of(&l, Some(99)), "tier99");
    }

    #[test]
    fn a_recording_reduces_to_series_that_add_up() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recordings/v1-timed.cxlt");
        let p = read(&path).expect("profile");
        assert!(p.dt.len() >= 5);
        for (id, s) in &p.series {
            assert_eq!(s.len(), p.dt.len(), "{id}");
        }
        let faults: f64 = p.series("faults").iter().sum();
        let total = p.summary.faults.total as f64;
        assert!(
            faults <= total && faults > 0.9 * total,
            "{faults} vs {total}"
        );
        let migrated: f64 = p.series("migrated:reason=compaction").iter().sum();
        assert_eq!(migrated, p.series("migrated").iter().sum::<f64>());
        assert!(p.series("no-such-metric").iter().all(|v| *v == 0.0));
    }
}
