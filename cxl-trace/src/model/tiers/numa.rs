//! NUMA balancing's side: hint faults per node, promotion decisions and their refusals, demotion batches per source node.

use super::*;
use std::collections::BTreeMap;

use crate::{
    model::event::{DemoteBatch, NumaFault, PromoteDecision, Verdict},
    model::schema::{self, Avail, RefusalCause},
};

/// NUMA hinting faults of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HintRow {
    /// Faults.
    pub faults: u64,
    /// Pages covered.
    pub pages: u64,
    /// Faults that migrated the page.
    pub migrated: u64,
    /// Faults whose migration failed.
    pub failed: u64,
    /// Faults on a page local to the CPU.
    pub local: u64,
}

/// NUMA hinting faults by node of the page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HintCounts {
    /// By node (-1: none).
    pub by_node: BTreeMap<i32, HintRow>,
}

impl HintCounts {
    /// Adds one fault.
    pub fn add(&mut self, n: &NumaFault) {
        let r = self.by_node.entry(n.mem_node).or_default();
        r.faults += 1;
        r.pages += u64::try_from(n.pages).unwrap_or(0);
        r.migrated += u64::from(n.migrated());
        r.failed += u64::from(n.migrate_failed());
        r.local += u64::from(n.local());
    }

    /// Adds another window.
    pub fn merge(&mut self, o: &HintCounts) {
        for (k, v) in &o.by_node {
            let r = self.by_node.entry(*k).or_default();
            r.faults += v.faults;
            r.pages += v.pages;
            r.migrated += v.migrated;
            r.failed += v.failed;
            r.local += v.local;
        }
    }

    /// All faults.
    pub fn total(&self) -> u64 {
        self.by_node.values().map(|r| r.faults).sum()
    }

    /// The window document's `numa_hint_faults`.
    pub fn to_model(&self, avail: &Option<String>) -> schema::HintFaults {
        schema::HintFaults {
            avail: Avail::from_reason(avail.as_deref()),
            total: self.total(),
            local: self.by_node.values().map(|r| r.local).sum(),
            by_node: self
                .by_node
                .iter()
                .map(|(n, r)| {
                    let row = schema::HintNode {
                        faults: r.faults,
                        pages: r.pages,
                        migrated: r.migrated,
                        failed: r.failed,
                        local: r.local,
                    };
                    (*n, row)
                })
                .collect(),
        }
    }
}

/// Why NUMA balancing migrated a page or not: outcomes of the decision steps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    /// `should_numa_migrate_memory` calls that said migrate.
    pub approved: u64,
    /// Folios refused, by cause.
    pub refused: BTreeMap<RefusalCause, u64>,
    /// `migrate_misplaced_folio_prepare` calls that succeeded.
    pub prepared: u64,
    /// Pages counted in `pgpromote_candidate` by the decisions (equals the vmstat delta).
    pub candidate_pages: i64,
    /// Refusals per process (tgid).
    pub refused_by_pid: BTreeMap<u32, u64>,
}

impl Decisions {
    /// Folds one decision step in. A threshold refusal of a folio already on the top tier is
    /// normal NUMA balancing saying no (`placement`), not the tiering hot threshold.
    pub fn add(&mut self, d: &PromoteDecision, tiers: &TierMap) {
        self.candidate_pages += d.candidate_pages;
        match d.verdict {
            Verdict::Approved => {
                self.approved += 1;
                return;
            }
            Verdict::Prepared => {
                self.prepared += 1;
                return;
            }
            _ => {}
        }
        let src_tier = d.src_nid.and_then(|n| tiers.tier(n));
        let on_top = matches!((src_tier, tiers.top_tier()), (Some(s), Some(top)) if s == top);
        let Some(cause) = RefusalCause::of(d.verdict, on_top) else {
            return;
        };
        *self.refused.entry(cause).or_default() += 1;
        *self.refused_by_pid.entry(d.pid).or_default() += 1;
    }

    /// Adds another window.
    pub fn merge(&mut self, o: &Decisions) {
        self.approved += o.approved;
        self.prepared += o.prepared;
        self.candidate_pages += o.candidate_pages;
        add_counts(&mut self.refused, &o.refused);
        add_counts(&mut self.refused_by_pid, &o.refused_by_pid);
    }

    /// All refusals.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    /// The window document's `promotion_decisions` (every refusal cause present).
    pub fn to_model(&self, avail: &Option<String>) -> schema::PromotionDecisions {
        schema::PromotionDecisions {
            avail: Avail::from_reason(avail.as_deref()),
            approved: self.approved,
            refused_total: self.refused_total(),
            refused: schema::dense(&RefusalCause::ALL, &self.refused),
            prepared: self.prepared,
            candidate_pages: self.candidate_pages,
        }
    }
}

/// Pages demoted per source node (`demote_folio_list`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DemoteByNode {
    /// Batches.
    pub batches: u64,
    /// Pages by source node (`None`: pgdat not found).
    pub pages: BTreeMap<Option<u32>, u64>,
}

impl DemoteByNode {
    /// Adds one batch.
    pub fn add(&mut self, d: &DemoteBatch) {
        self.batches += 1;
        *self.pages.entry(d.src_nid).or_default() += u64::from(d.pages);
    }

    /// Adds another window.
    pub fn merge(&mut self, o: &DemoteByNode) {
        self.batches += o.batches;
        add_counts(&mut self.pages, &o.pages);
    }

    /// The window document's `demotion_batches`.
    pub fn to_model(&self, avail: &Option<String>, tiers: &TierMap) -> schema::DemotionBatches {
        schema::DemotionBatches {
            avail: Avail::from_reason(avail.as_deref()),
            batches: self.batches,
            pages: self.pages.values().sum(),
            by_source_node: self
                .pages
                .iter()
                .map(|(n, p)| {
                    let key = n.map_or("unknown".to_string(), |n| format!("node{n}"));
                    let tier = tier_label(n.and_then(|n| tiers.tier(n)));
                    (key, schema::DemoteNode { pages: *p, tier })
                })
                .collect(),
        }
    }
}
