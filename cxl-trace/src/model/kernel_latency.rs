//! Fault latency aggregated in the kernel (the live modes): the tables the kernel needs to
//! place a fault's page in a tier (pfn ranges per node, node to tier slot), and the per-tier,
//! per-class histograms read each interval turned into deltas for the [`LatencyTable`]. Pure;
//! the map reads and writes are in the probe layer.
//!
//! The kernel's buckets are log-linear (16 per power of two): each delta bucket is recorded at
//! its midpoint, so a percentile read from the live modes is within 1/32 of the value a
//! recording of every fault gives; the counts and the sums are exact.

use cxl_trace_common::{
    bucket_bounds,
    lat_agg::{BUCKETS, CLASSES, NODES, RANGES, TIER_SLOTS, UNKNOWN_TIER},
    LatHist, PfnRange, PfnRanges,
};

use crate::model::{
    event::FaultClass,
    hist::MAX_LATENCY_NS,
    tiers::{LatencyTable, TierMap},
};

/// How tiers map to the kernel's slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierSlots {
    /// Slot to tier id (`None`: the unknown slot, and unused ones).
    pub tiers: [Option<u32>; TIER_SLOTS as usize],
    /// Node to slot, for the kernel's `NODE_TIER`.
    pub node_slot: [u32; NODES as usize],
}

impl TierSlots {
    /// The tiers in rank order (more than `TIER_SLOTS - 1` tiers: the rest count as unknown).
    pub fn new(t: &TierMap) -> Self {
        let mut ids: Vec<u32> = t.node_tier.values().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tiers = [None; TIER_SLOTS as usize];
        for (slot, id) in ids.iter().take(UNKNOWN_TIER as usize).enumerate() {
            tiers[slot] = Some(*id);
        }
        let mut node_slot = [UNKNOWN_TIER; NODES as usize];
        for (node, tier) in &t.node_tier {
            let slot = tiers.iter().position(|x| *x == Some(*tier));
            if let (Some(n), Some(s)) = (node_slot.get_mut(*node as usize), slot) {
                *n = s as u32;
            }
        }
        Self { tiers, node_slot }
    }
}

/// The kernel's pfn-to-node table: the online memory blocks, adjacent blocks of one node
/// merged. `None` when there are more ranges than the table holds (then the live modes take
/// a record per timed fault, as `record` does).
pub fn pfn_ranges(t: &TierMap) -> Option<PfnRanges> {
    let per = t.pfns.pages_per_block;
    let mut out = PfnRanges {
        len: 0,
        _reserved: 0,
        ranges: [PfnRange::default(); RANGES],
    };
    if per == 0 {
        return Some(out);
    }
    let mut ranges: Vec<PfnRange> = Vec::new();
    for (&block, &node) in &t.pfns.blocks {
        let (start, end) = (block * per, (block + 1) * per);
        match ranges.last_mut() {
            Some(r) if r.node == node && r.end == start => r.end = end,
            _ => ranges.push(PfnRange {
                start,
                end,
                node,
                _reserved: 0,
            }),
        }
    }
    if ranges.len() > RANGES {
        return None;
    }
    out.len = ranges.len() as u32;
    out.ranges[..ranges.len()].copy_from_slice(&ranges);
    Some(out)
}

/// Turns successive reads of the histograms (summed over CPUs, `TIER_SLOTS * CLASSES` of
/// them) into deltas.
#[derive(Clone, Debug, Default)]
pub struct LatencyTracker {
    prev: Vec<LatHist>,
}

/// An empty histogram.
pub fn empty_hist() -> LatHist {
    LatHist {
        n: 0,
        sum_ns: 0,
        retried: 0,
        gup: 0,
        counts: [0; BUCKETS],
    }
}

fn sub(a: &LatHist, b: &LatHist) -> LatHist {
    let mut d = empty_hist();
    d.n = a.n.saturating_sub(b.n);
    d.sum_ns = a.sum_ns.saturating_sub(b.sum_ns);
    d.retried = a.retried.saturating_sub(b.retried);
    d.gup = a.gup.saturating_sub(b.gup);
    for (i, c) in d.counts.iter_mut().enumerate() {
        *c = a.counts[i].saturating_sub(b.counts[i]);
    }
    d
}

impl LatencyTracker {
    /// Starts from the read at the window's start.
    pub fn new(base: &[LatHist]) -> Self {
        Self {
            prev: base.to_vec(),
        }
    }

    /// Adds what the kernel counted since the last read to `table`.
    pub fn advance(&mut self, now: &[LatHist], slots: &TierSlots, table: &mut LatencyTable) {
        for (i, h) in now.iter().enumerate() {
            let d = match self.prev.get(i) {
                Some(p) => sub(h, p),
                None => *h,
            };
            if d.n == 0 {
                continue;
            }
            let slot = i / CLASSES as usize;
            let class = FaultClass::ALL[i % CLASSES as usize];
            let tier = slots.tiers.get(slot).copied().flatten();
            table.record_buckets(tier, class, &d, |b| {
                let (lo, w) = bucket_bounds(b);
                (lo + w / 2).clamp(1, MAX_LATENCY_NS)
            });
        }
        self.prev = now.to_vec();
    }
}

#[cfg(test)]
mod tests;
