//! Fault latency per tier and class.

use super::*;
use std::collections::BTreeMap;

use crate::{
    model::event::{FaultClass, FaultLatency},
    model::hist::{new_histogram, percentiles, MAX_LATENCY_NS},
    model::schema::{self, Avail},
};
use hdrhistogram::Histogram;

/// Fault latency by tier and class.
#[derive(Clone, Debug, Default)]
pub struct LatencyTable {
    /// Histograms (ns) by (tier, class).
    pub by: BTreeMap<(Option<u32>, FaultClass), Histogram<u64>>,
    /// Exact sum of the latencies (ns) by (tier, class), each clamped like the histograms'
    /// values (1 ns to 10 s): the histograms keep 3 significant digits, the exporter's `_sum`
    /// needs every one.
    pub sum_ns: BTreeMap<(Option<u32>, FaultClass), u64>,
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
        let ns = f.latency_ns.clamp(1, MAX_LATENCY_NS);
        let _ = h.record(ns);
        let sum = self.sum_ns.entry((tier, f.class())).or_default();
        *sum = sum.saturating_add(ns);
        *self.count_by_tier.entry(tier).or_default() += 1;
        if f.retries > 0 {
            self.retried += 1;
        }
        if f.gup() {
            self.gup += 1;
        }
    }

    /// Adds faults the kernel put in buckets (`value` gives a bucket's latency): `h` counts
    /// them, with their exact sum and the retried and get_user_pages ones.
    pub fn record_buckets(
        &mut self,
        tier: Option<u32>,
        class: FaultClass,
        h: &cxl_trace_common::LatHist,
        value: impl Fn(usize) -> u64,
    ) {
        let hist = self.by.entry((tier, class)).or_insert_with(new_histogram);
        for (b, &n) in h.counts.iter().enumerate() {
            if n > 0 {
                let _ = hist.record_n(value(b), n);
            }
        }
        let sum = self.sum_ns.entry((tier, class)).or_default();
        *sum = sum.saturating_add(h.sum_ns);
        *self.count_by_tier.entry(tier).or_default() += h.n;
        self.retried += h.retried;
        self.gup += h.gup;
    }

    /// Adds another table.
    pub fn merge(&mut self, o: &LatencyTable) {
        for (k, h) in &o.by {
            let _ = self.by.entry(*k).or_insert_with(new_histogram).add(h);
        }
        add_counts(&mut self.sum_ns, &o.sum_ns);
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
