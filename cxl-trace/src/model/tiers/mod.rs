//! Tier attribution (pure): fault latency per tier and class, promotions and demotions by
//! cause and tier pair, NUMA hinting faults per node, ping-pong, rare events.
//!
//! Tiers are the kernel's memory tiers (`memory_tierN`): a lower id is a faster tier. A move to
//! a lower tier id is a promotion, to a higher one a demotion. Pages get their node from the
//! pfn (memory blocks) or from the kernel directly (`task_numa_fault`'s node).

use std::collections::BTreeMap;

use crate::{
    model::event::FolioMigrate,
    model::hist::MAX_LATENCY_NS,
    model::pte::PteFormat,
    model::rare::RareEvent,
    model::schema::{self},
    model::topology::{PfnMap, Topology},
};

mod latency;
pub use latency::*;
mod moves;
pub use moves::*;
mod numa;
pub use numa::*;
mod pingpong;
pub use pingpong::*;
mod log;
pub use log::*;

/// (source tier, destination tier) of a move; `None` where the tier is unknown.
pub type TierPair = (Option<u32>, Option<u32>);

/// Node and tier lookup for attribution.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierMap {
    /// pfn to node.
    pub pfns: PfnMap,
    /// node to tier id.
    pub node_tier: BTreeMap<u32, u32>,
    /// How page table entries encode pfns (migration-PTE fallback).
    pub pte: PteFormat,
    /// CXL regions: (name, first pfn, end pfn), to place addresses outside system RAM.
    pub regions: Vec<(String, u64, u64)>,
}

impl TierMap {
    /// From a topology snapshot.
    pub fn from_topology(t: &Topology) -> Self {
        Self {
            pfns: t.pfn_map(),
            node_tier: t
                .nodes
                .iter()
                .filter_map(|n| Some((n.id, n.tier?)))
                .collect(),
            pte: PteFormat::native(t.five_level_paging),
            regions: t
                .cxl
                .region_ranges
                .iter()
                .map(|r| (r.name.clone(), r.start >> 12, (r.start + r.size) >> 12))
                .collect(),
        }
    }

    /// Tier of a node.
    pub fn tier(&self, node: u32) -> Option<u32> {
        self.node_tier.get(&node).copied()
    }

    /// The top tier: the one with the lowest abstract distance, i.e. the smallest id.
    pub fn top_tier(&self) -> Option<u32> {
        self.node_tier.values().min().copied()
    }

    /// Tier of a pfn.
    pub fn tier_of_pfn(&self, pfn: u64) -> Option<u32> {
        self.tier(self.pfns.node_of(pfn)?)
    }

    /// A RAS or CXL event for the log and exports, with the node and tier it concerns.
    pub fn ras_entry(&self, e: &RareEvent) -> schema::RasEntry {
        let mut entry = e.to_model(&self.pfns);
        entry.tier = entry.node.and_then(|n| self.tier(n));
        if entry.node.is_none() {
            entry.placement = self.placement(e);
        }
        entry
    }

    /// Where an address without a node lies (see [`schema::RasEntry::placement`]).
    fn placement(&self, e: &RareEvent) -> Option<String> {
        if e.unmapped() {
            return Some("no host address: the DPA is not mapped by a committed region".into());
        }
        let pfn = e.pfn()?;
        let Some((name, start, end)) = self
            .regions
            .iter()
            .find(|(_, s, e)| (*s..*e).contains(&pfn))
        else {
            return Some("not system RAM of any node, nor in a CXL region".into());
        };
        // dax/kmem onlines the region after its devdax reserve: below its first online block.
        let first_online = self
            .pfns
            .blocks
            .keys()
            .map(|b| b * self.pfns.pages_per_block)
            .filter(|p| (*start..*end).contains(p))
            .min();
        Some(match first_online {
            Some(first) if pfn < first => format!("{name}, in the devdax reserve, not system RAM"),
            _ => format!("{name}, not onlined as system RAM"),
        })
    }
}

/// `tier4`, or `unknown`.
pub fn tier_label(t: Option<u32>) -> String {
    match t {
        Some(t) => format!("tier{t}"),
        None => "unknown".into(),
    }
}

/// Adds the counts of `from` to `into`, key by key (how every counter map here merges).
/// Saturating: counts from a hostile recording cannot wrap (or panic) a merge.
pub fn add_counts<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_default();
        *e = e.saturating_add(*v);
    }
}

/// Which hooks fed this window, and why the others did not.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Availability {
    /// Fault latency: `Err(reason)` when the exit hook is not attached.
    pub latency: Option<String>,
    /// Per-folio migration (source/destination tier): `Err(reason)` when not attached.
    pub folio: Option<String>,
    /// Per-folio copy time (`move_to_new_folio`): `Err(reason)` when the per-folio moves come
    /// from the migration-PTE tracepoints, or not at all.
    pub copy: Option<String>,
    /// NUMA hinting faults.
    pub numa: Option<String>,
    /// Promotion decisions (`should_numa_migrate_memory`, `migrate_misplaced_folio_prepare`).
    pub decision: Option<String>,
    /// Demotion batches per source node (`demote_folio_list`).
    pub demote: Option<String>,
}

impl Availability {
    /// Every hook unavailable for the same `reason`.
    pub fn none(reason: &str) -> Self {
        let r = Some(reason.to_string());
        Self {
            latency: r.clone(),
            folio: r.clone(),
            copy: r.clone(),
            numa: r.clone(),
            decision: r.clone(),
            demote: r,
        }
    }
}

/// Everything tier-related counted over a window.
#[derive(Clone, Debug, Default)]
pub struct TierTotals {
    /// Fault latency.
    pub latency: LatencyTable,
    /// Moves between tiers.
    pub moves: TierMoves,
    /// NUMA hinting faults.
    pub hints: HintCounts,
    /// Ping-pong.
    pub pingpong: PingPong,
    /// Rare events.
    pub rare: RareCounts,
    /// Promotion decisions.
    pub decisions: Decisions,
    /// Demotion batches per source node.
    pub demote: DemoteByNode,
}

impl TierTotals {
    /// Adds another window.
    pub fn merge(&mut self, o: &TierTotals) {
        self.latency.merge(&o.latency);
        self.moves.merge(&o.moves);
        self.hints.merge(&o.hints);
        self.pingpong.merge(&o.pingpong);
        self.rare.merge(&o.rare);
        self.decisions.merge(&o.decisions);
        self.demote.merge(&o.demote);
    }

    /// Fills the window's tier-related members.
    pub fn fill(
        &self,
        w: &mut schema::Window,
        avail: &Availability,
        tiers: &TierMap,
        pingpong_window_s: f64,
        table_full: u64,
    ) {
        w.fault_latency = self.latency.to_model(&avail.latency);
        w.numa_hint_faults = self.hints.to_model(&avail.numa);
        w.promotion_decisions = self.decisions.to_model(&avail.decision);
        w.demotion_batches = self.demote.to_model(&avail.demote, tiers);
        w.pingpong = self.pingpong.to_model(pingpong_window_s, table_full);
        w.events_log = self.rare.to_model();
    }
}

/// Folds a folio move into the tier moves and the ping-pong detector; returns the tier pair
/// for the batch accounting when it succeeded.
pub fn fold_folio(
    f: &FolioMigrate,
    tiers: &TierMap,
    moves: &mut TierMoves,
    pp: &mut PingPong,
    tracker: &mut PingPongTracker,
) -> Option<TierPair> {
    if f.rc != 0 {
        moves.folio_failures += 1;
        return None;
    }
    moves.folios += 1;
    if let Some(ns) = f.copy_ns {
        let _ = moves.copy_latency.record(ns.clamp(1, MAX_LATENCY_NS));
    }
    let node = |pfn: Option<u64>| pfn.and_then(|p| tiers.pfns.node_of(p));
    let (sn, dn) = (node(f.src_pfn), node(f.dst_pfn));
    if sn.is_none() || dn.is_none() {
        moves.unmapped_pfns += 1;
    }
    let st = sn.and_then(|n| tiers.tier(n));
    let dt = dn.and_then(|n| tiers.tier(n));
    if let (Some(s), Some(d)) = (st, dt) {
        let promoted = match direction(s, d) {
            Direction::Promotion => Some(true),
            Direction::Demotion => Some(false),
            Direction::Lateral => None,
        };
        if let Some(promoted) = promoted {
            // A promotion's task is the page's owner (the faulting task); a demotion's is not.
            let owner = promoted.then_some(f.pid);
            tracker.observe(pp, (f.mapping, f.index), f.ts_ns, promoted, owner, f.pages);
        }
    }
    Some((st, dt))
}

#[cfg(test)]
mod tests;
