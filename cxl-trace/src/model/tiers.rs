//! Tier attribution (pure): fault latency per tier and class, promotions and demotions by
//! cause and tier pair, NUMA hinting faults per node, ping-pong, rare events.
//!
//! Tiers are the kernel's memory tiers (`memory_tierN`): a lower id is a faster tier. A move to
//! a lower tier id is a promotion, to a higher one a demotion. Pages get their node from the
//! pfn (memory blocks) or from the kernel directly (`task_numa_fault`'s node).

use std::collections::BTreeMap;

use crate::{
    model::event::{
        Comm, DemoteBatch, FaultClass, FaultLatency, FolioMigrate, MigrateReason, NumaFault,
        PromoteDecision, Verdict,
    },
    model::hist::{new_histogram, percentiles, FastMap, MAX_LATENCY_NS},
    model::pte::PteFormat,
    model::rare::{RareClass, RareEvent},
    model::schema::{self, Avail, Cause, LogEntry, RefusalCause},
    model::topology::{PfnMap, Topology},
};
use hdrhistogram::Histogram;

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
        entry
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
pub fn add_counts<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
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

/// Fault latency by tier and class.
#[derive(Clone, Debug, Default)]
pub struct LatencyTable {
    /// Histograms (ns) by (tier, class).
    pub by: BTreeMap<(Option<u32>, FaultClass), Histogram<u64>>,
    /// Timed faults by tier.
    pub count_by_tier: BTreeMap<Option<u32>, u64>,
    /// Faults that needed `VM_FAULT_RETRY` rounds.
    pub retried: u64,
    /// get_user_pages faults.
    pub gup: u64,
}

impl LatencyTable {
    /// Records a timed fault at `tier`.
    pub fn record(&mut self, f: &FaultLatency, tier: Option<u32>) {
        let h = self
            .by
            .entry((tier, f.class()))
            .or_insert_with(new_histogram);
        let _ = h.record(f.latency_ns.clamp(1, MAX_LATENCY_NS));
        *self.count_by_tier.entry(tier).or_default() += 1;
        if f.retries > 0 {
            self.retried += 1;
        }
        if f.gup() {
            self.gup += 1;
        }
    }

    /// Adds another table.
    pub fn merge(&mut self, o: &LatencyTable) {
        for (k, h) in &o.by {
            let _ = self.by.entry(*k).or_insert_with(new_histogram).add(h);
        }
        for (t, n) in &o.count_by_tier {
            *self.count_by_tier.entry(*t).or_default() += n;
        }
        self.retried += o.retried;
        self.gup += o.gup;
    }

    /// All classes of one tier merged.
    pub fn tier_total(&self, tier: Option<u32>) -> Histogram<u64> {
        let mut h = new_histogram();
        for ((t, _), x) in &self.by {
            if *t == tier {
                let _ = h.add(x);
            }
        }
        h
    }

    /// The window document's `fault_latency`.
    pub fn to_model(&self, avail: &Option<String>) -> schema::FaultLatency {
        let by_tier = self
            .count_by_tier
            .keys()
            .map(|&t| {
                let by_class = FaultClass::ALL
                    .iter()
                    .filter_map(|c| self.by.get(&(t, *c)).map(|h| (*c, percentiles(h))))
                    .collect();
                let all = percentiles(&self.tier_total(t));
                (tier_label(t), schema::TierLatency { all, by_class })
            })
            .collect();
        schema::FaultLatency {
            avail: Avail::from_reason(avail.as_deref()),
            by_tier,
            retried: self.retried,
            gup: self.gup,
        }
    }
}

/// What caused a migration, for promotion/demotion breakdowns.
pub fn cause(reason: MigrateReason, comm: &Comm) -> Cause {
    match reason {
        MigrateReason::NumaMisplaced => Cause::NumaBalancing,
        MigrateReason::Demotion => {
            let c = comm.as_string();
            if c.starts_with("kswapd") {
                Cause::Kswapd
            } else if c.starts_with("khugepaged") {
                Cause::Khugepaged
            } else {
                // Direct reclaim and proactive reclaim (memory.reclaim) alike: up to 6.12 the
                // kernel counts both as pgdemote_direct, later kernels split off
                // pgdemote_proactive.
                Cause::Direct
            }
        }
        MigrateReason::MempolicyMbind => Cause::Mbind,
        MigrateReason::MemoryHotplug => Cause::Hotplug,
        other => Cause::Other(other),
    }
}

/// Direction of a move between tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// To a faster tier.
    Promotion,
    /// To a slower tier.
    Demotion,
    /// Within a tier.
    Lateral,
}

/// Direction of a move from tier `src` to tier `dst` (lower id is faster).
pub fn direction(src: u32, dst: u32) -> Direction {
    match dst.cmp(&src) {
        std::cmp::Ordering::Less => Direction::Promotion,
        std::cmp::Ordering::Greater => Direction::Demotion,
        std::cmp::Ordering::Equal => Direction::Lateral,
    }
}

/// Pages moved between tiers.
#[derive(Clone, Debug)]
pub struct TierMoves {
    /// Pages by (source tier, destination tier).
    pub pairs: BTreeMap<TierPair, u64>,
    /// Promoted pages by cause.
    pub promotions: BTreeMap<Cause, u64>,
    /// Demoted pages by cause.
    pub demotions: BTreeMap<Cause, u64>,
    /// Pages moved within one tier.
    pub lateral: u64,
    /// Pages of batches with no per-folio information (or tiers unknown).
    pub unattributed: u64,
    /// Batches whose folios all went between one pair of tiers.
    pub exact_batches: u64,
    /// Batches split across tier pairs in proportion to their folios.
    pub apportioned_batches: u64,
    /// Folios moved (`move_to_new_folio` returned 0).
    pub folios: u64,
    /// Folio moves that failed.
    pub folio_failures: u64,
    /// Copy time of a folio, ns.
    pub copy_latency: Histogram<u64>,
    /// Folio events whose pfns map to no known node (stale topology or a wrong vmemmap).
    pub unmapped_pfns: u64,
}

impl Default for TierMoves {
    fn default() -> Self {
        Self {
            pairs: BTreeMap::new(),
            promotions: BTreeMap::new(),
            demotions: BTreeMap::new(),
            lateral: 0,
            unattributed: 0,
            exact_batches: 0,
            apportioned_batches: 0,
            folios: 0,
            folio_failures: 0,
            copy_latency: new_histogram(),
            unmapped_pfns: 0,
        }
    }
}

impl TierMoves {
    /// Adds `pages` that went from `src` to `dst` because of `cause`. Returns the direction
    /// when both tiers are known.
    pub fn add(
        &mut self,
        src: Option<u32>,
        dst: Option<u32>,
        pages: u64,
        reason: MigrateReason,
        cause: Cause,
    ) -> Option<Direction> {
        if pages == 0 {
            return None;
        }
        *self.pairs.entry((src, dst)).or_default() += pages;
        match (src, dst) {
            (Some(s), Some(d)) => {
                let dir = direction(s, d);
                match dir {
                    Direction::Promotion => *self.promotions.entry(cause).or_default() += pages,
                    Direction::Demotion => *self.demotions.entry(cause).or_default() += pages,
                    Direction::Lateral => self.lateral += pages,
                }
                return Some(dir);
            }
            // A demotion goes to a slower tier by definition, even when the tiers are unknown.
            _ if reason == MigrateReason::Demotion => {
                *self.demotions.entry(cause).or_default() += pages
            }
            _ => self.unattributed += pages,
        }
        None
    }

    /// Adds another window.
    pub fn merge(&mut self, o: &TierMoves) {
        add_counts(&mut self.pairs, &o.pairs);
        add_counts(&mut self.promotions, &o.promotions);
        add_counts(&mut self.demotions, &o.demotions);
        self.lateral += o.lateral;
        self.unattributed += o.unattributed;
        self.exact_batches += o.exact_batches;
        self.apportioned_batches += o.apportioned_batches;
        self.folios += o.folios;
        self.folio_failures += o.folio_failures;
        let _ = self.copy_latency.add(&o.copy_latency);
        self.unmapped_pfns += o.unmapped_pfns;
    }

    /// Promoted pages.
    pub fn promoted(&self) -> u64 {
        self.promotions.values().sum()
    }

    /// Demoted pages.
    pub fn demoted(&self) -> u64 {
        self.demotions.values().sum()
    }

    /// Fills the window's `promotions`, `demotions`, `tier_pairs` and `per_folio`; `avail`
    /// says whether per-folio moves are seen at all, `copy` whether their copy time is.
    pub fn fill(&self, m: &mut schema::Migrations, avail: &Option<String>, copy: &Option<String>) {
        m.promotions = schema::Moves {
            pages: self.promoted(),
            by_cause: self.promotions.clone(),
        };
        m.demotions = schema::Moves {
            pages: self.demoted(),
            by_cause: self.demotions.clone(),
        };
        m.tier_pairs = self
            .pairs
            .iter()
            .map(|((s, d), n)| (format!("{}->{}", tier_label(*s), tier_label(*d)), *n))
            .collect();
        m.lateral_pages = self.lateral;
        m.unattributed_pages = self.unattributed;
        m.per_folio = schema::PerFolio {
            avail: Avail::from_reason(avail.as_deref()),
            folios: self.folios,
            failures: self.folio_failures,
            exact_batches: self.exact_batches,
            apportioned_batches: self.apportioned_batches,
            unmapped_pfns: self.unmapped_pfns,
            copy_ns: match copy {
                None => schema::CopyTime::Measured(percentiles(&self.copy_latency)),
                Some(r) => schema::CopyTime::Unavailable(Avail::from_reason(Some(r))),
            },
        };
    }
}

/// Successful folio moves of one batch in progress, by tier pair.
#[derive(Clone, Debug, Default)]
pub struct BatchFolios {
    /// Folios by (source tier, destination tier).
    pub pairs: BTreeMap<TierPair, u64>,
}

impl BatchFolios {
    /// Splits `pages` over the pairs: exactly when there is one pair, else in proportion to
    /// the folio counts (the remainder goes to the largest pair). Returns the split and whether
    /// it was exact.
    pub fn split(&self, pages: u64) -> (Vec<(TierPair, u64)>, bool) {
        let folios: u64 = self.pairs.values().sum();
        if folios == 0 {
            return (Vec::new(), true);
        }
        if self.pairs.len() == 1 {
            let (k, _) = self
                .pairs
                .iter()
                .next()
                .map(|(k, v)| (*k, *v))
                .unwrap_or_default();
            return (vec![(k, pages)], true);
        }
        let mut out: Vec<(TierPair, u64)> = self
            .pairs
            .iter()
            .map(|(k, n)| {
                (
                    *k,
                    (u128::from(pages) * u128::from(*n) / u128::from(folios)) as u64,
                )
            })
            .collect();
        let given: u64 = out.iter().map(|x| x.1).sum();
        if let Some(big) = out.iter_mut().max_by_key(|x| x.1) {
            big.1 += pages - given;
        }
        (out, false)
    }
}

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

/// Last tier move of a page, keyed by (mapping, index), which survive migration.
#[derive(Clone, Copy, Debug)]
struct LastMove {
    ts_ns: u64,
    promoted: bool,
    /// The process the page belongs to, when known (the task of a promotion fault).
    owner: Option<u32>,
}

/// Ping-pong: folios demoted and promoted again (or the reverse) within a window.
#[derive(Clone, Debug)]
pub struct PingPong {
    /// Bounces, in folios (a THP counts once).
    pub bounces: u64,
    /// Base pages of the bounced folios whose size is known.
    pub pages: u64,
    /// Bounced folios whose size is not known (the `move_to_new_folio` path).
    pub unknown_size: u64,
    /// Time a page stayed before bouncing back, ns.
    pub residency: Histogram<u64>,
    /// Bounces by owning process.
    pub by_pid: FastMap<u32, u64>,
}

impl Default for PingPong {
    fn default() -> Self {
        Self {
            bounces: 0,
            pages: 0,
            unknown_size: 0,
            residency: new_histogram(),
            by_pid: FastMap::default(),
        }
    }
}

impl PingPong {
    /// Adds another window.
    pub fn merge(&mut self, o: &PingPong) {
        self.bounces += o.bounces;
        self.pages += o.pages;
        self.unknown_size += o.unknown_size;
        let _ = self.residency.add(&o.residency);
        for (p, n) in &o.by_pid {
            *self.by_pid.entry(*p).or_default() += n;
        }
    }

    /// The window document's `pingpong`.
    pub fn to_model(&self, window_s: f64, table_full: u64) -> schema::PingPong {
        let mut top: Vec<(&u32, &u64)> = self.by_pid.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        schema::PingPong {
            bounces: self.bounces,
            unit: "folios".into(),
            // Base pages where every bounced folio's size is known, else null (the per-folio
            // hook does not report sizes; the migration-entry tracepoints do).
            pages: (self.unknown_size == 0).then_some(self.pages),
            folios_of_unknown_size: self.unknown_size,
            window_s,
            residency_ns: percentiles(&self.residency),
            top_processes: top
                .into_iter()
                .take(10)
                .map(|(p, n)| schema::PidBounces {
                    pid: *p,
                    bounces: *n,
                })
                .collect(),
            table_full,
        }
    }
}

/// The page table of the ping-pong detector: bounded, so memory stays flat.
#[derive(Clone, Debug)]
pub struct PingPongTracker {
    last: FastMap<(u64, u64), LastMove>,
    /// Bounce window, ns.
    pub window_ns: u64,
    /// Most pages remembered.
    pub capacity: usize,
    /// Moves not remembered because the table was full.
    pub table_full: u64,
}

impl PingPongTracker {
    /// A tracker with a bounce window and a page capacity.
    pub fn new(window_ns: u64, capacity: usize) -> Self {
        Self {
            last: FastMap::default(),
            window_ns,
            capacity,
            table_full: 0,
        }
    }

    /// Notes a promotion or demotion of the folio (mapping, index) of `pages` base pages (when
    /// known) at `ts_ns` by task `pid`; counts a bounce into `pp` when it reverses the folio's
    /// last move within the window.
    pub fn observe(
        &mut self,
        pp: &mut PingPong,
        key: (u64, u64),
        ts_ns: u64,
        promoted: bool,
        pid: Option<u32>,
        pages: Option<u64>,
    ) {
        if key.0 == 0 {
            return;
        }
        let owner_now = if promoted { pid } else { None };
        if let Some(prev) = self.last.get_mut(&key) {
            let dt = ts_ns.saturating_sub(prev.ts_ns);
            if prev.promoted != promoted && dt <= self.window_ns {
                pp.bounces += 1;
                match pages {
                    Some(n) => pp.pages += n,
                    None => pp.unknown_size += 1,
                }
                let _ = pp.residency.record(dt.clamp(1, MAX_LATENCY_NS));
                if let Some(owner) = owner_now.or(prev.owner) {
                    *pp.by_pid.entry(owner).or_default() += 1;
                }
            }
            *prev = LastMove {
                ts_ns,
                promoted,
                owner: owner_now.or(prev.owner),
            };
            return;
        }
        if self.last.len() >= self.capacity {
            // Forget moves older than the window before refusing new pages.
            let horizon = ts_ns.saturating_sub(self.window_ns);
            self.last.retain(|_, m| m.ts_ns >= horizon);
            if self.last.len() >= self.capacity {
                self.table_full += 1;
                return;
            }
        }
        self.last.insert(
            key,
            LastMove {
                ts_ns,
                promoted,
                owner: owner_now,
            },
        );
    }

    /// Pages remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no page is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// Rare events: counts, kswapd wake-ups per node and a short log.
#[derive(Clone, Debug, Default)]
pub struct RareCounts {
    /// By `category:name`.
    pub by_event: BTreeMap<String, u64>,
    /// kswapd wake-ups by node.
    pub kswapd_wakes: BTreeMap<u32, u64>,
    /// Event log (RAS events and topology changes; NUMA task moves are only counted).
    pub log: Vec<LogEntry>,
    /// Entries not logged because the log was full.
    pub log_dropped: u64,
}

/// Most log entries kept per window.
pub const LOG_MAX: usize = 256;

impl RareCounts {
    /// Adds a decoded rare event.
    pub fn add(&mut self, e: &RareEvent, tiers: &TierMap) {
        *self
            .by_event
            .entry(format!("{}:{}", e.spec.category, e.spec.name))
            .or_default() += 1;
        match e.spec.class {
            RareClass::Kswapd => {
                if let Some(n) = e.node(&tiers.pfns) {
                    *self.kswapd_wakes.entry(n).or_default() += 1;
                }
            }
            RareClass::Ras => {
                self.log_entry(LogEntry::Ras(tiers.ras_entry(e)));
            }
            RareClass::NumaTask => {}
        }
    }

    /// Adds a log entry (bounded).
    pub fn log_entry(&mut self, v: LogEntry) {
        if self.log.len() < LOG_MAX {
            self.log.push(v);
        } else {
            self.log_dropped += 1;
        }
    }

    /// Adds another window (the log keeps the newest entries).
    pub fn merge(&mut self, o: &RareCounts) {
        add_counts(&mut self.by_event, &o.by_event);
        add_counts(&mut self.kswapd_wakes, &o.kswapd_wakes);
        for v in &o.log {
            self.log_entry(v.clone());
        }
        self.log_dropped += o.log_dropped;
    }

    /// The window document's `events_log`.
    pub fn to_model(&self) -> schema::EventsLog {
        let numa = |name: &str| self.by_event.get(name).copied().unwrap_or(0);
        schema::EventsLog {
            numa_task: schema::NumaTask {
                moves: numa("sched:sched_move_numa"),
                swaps: numa("sched:sched_swap_numa"),
                sticks: numa("sched:sched_stick_numa"),
            },
            kswapd_wakes_by_node: self.kswapd_wakes.clone(),
            counts: self.by_event.clone(),
            log: self.log.clone(),
            log_dropped: self.log_dropped,
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
