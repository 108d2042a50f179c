use std::collections::BTreeMap;

use super::*;
use crate::model::{event::FaultLatency, topology::PfnMap};

fn tiers() -> TierMap {
    TierMap {
        pfns: PfnMap {
            pages_per_block: 100,
            blocks: BTreeMap::from([(0, 0), (1, 0), (2, 1), (4, 1), (5, 0)]),
        },
        node_tier: BTreeMap::from([(0, 4), (1, 72)]),
        ..TierMap::default()
    }
}

#[test]
fn tiers_take_slots_in_rank_order_and_blocks_merge() {
    let s = TierSlots::new(&tiers());
    assert_eq!(&s.tiers[..3], &[Some(4), Some(72), None]);
    assert_eq!(s.tiers[UNKNOWN_TIER as usize], None);
    assert_eq!(&s.node_slot[..3], &[0, 1, UNKNOWN_TIER]);
    let r = pfn_ranges(&tiers()).expect("fits");
    let got: Vec<(u64, u64, u32)> = r.ranges[..r.len as usize]
        .iter()
        .map(|r| (r.start, r.end, r.node))
        .collect();
    assert_eq!(
        got,
        vec![(0, 200, 0), (200, 300, 1), (400, 500, 1), (500, 600, 0)]
    );
}

#[test]
fn too_many_ranges_leave_the_kernel_table_off() {
    let mut t = tiers();
    t.pfns.blocks = (0..2 * RANGES as u64).map(|b| (b * 2, 0)).collect();
    assert!(pfn_ranges(&t).is_none());
}

/// The kernel's buckets give the same counts, sums and tiers as a record per fault, and
/// percentiles within half a bucket (1/32).
#[test]
fn bucketed_faults_match_the_per_event_table() {
    let t = tiers();
    let slots = TierSlots::new(&t);
    let mut kernel = vec![empty_hist(); (TIER_SLOTS * CLASSES) as usize];
    let base = kernel.clone();
    let mut exact = LatencyTable::default();
    let lat = |i: u64| 700 + (i * 7919) % 90_000;
    for i in 0..5_000u64 {
        let (tier, flags) = match i % 3 {
            0 => (Some(4), cxl_trace_common::fault_flags::ALLOC),
            1 => (Some(72), cxl_trace_common::fault_flags::NUMA_HINT),
            _ => (None, 0),
        };
        let f = FaultLatency {
            ts_ns: i,
            pid: 1,
            tid: 1,
            cpu: 0,
            comm: Default::default(),
            address: 0,
            latency_ns: lat(i),
            alloc_pfn: None,
            ret: 0,
            flags,
            numa_node: None,
            retries: u32::from(i % 10 == 0),
        };
        exact.record(&f, tier);
        let slot = tier.map_or(UNKNOWN_TIER as usize, |id| {
            slots.tiers.iter().position(|x| *x == Some(id)).unwrap_or(0)
        });
        let class = cxl_trace_common::fault_class_index(flags, 0) as usize;
        assert_eq!(FaultClass::ALL[class], f.class(), "one classification");
        let h = &mut kernel[slot * CLASSES as usize + class];
        h.n += 1;
        h.sum_ns += lat(i);
        h.retried += u64::from(f.retries > 0);
        h.counts[cxl_trace_common::latency_bucket(lat(i))] += 1;
    }
    let mut table = LatencyTable::default();
    LatencyTracker::new(&base).advance(&kernel, &slots, &mut table);
    assert_eq!(table.count_by_tier, exact.count_by_tier);
    assert_eq!(table.sum_ns, exact.sum_ns);
    assert_eq!(table.retried, exact.retried);
    for (k, h) in &exact.by {
        let got = &table.by[k];
        assert_eq!(got.len(), h.len(), "{k:?}");
        for q in [0.5, 0.9, 0.99] {
            let (a, b) = (
                got.value_at_quantile(q) as f64,
                h.value_at_quantile(q) as f64,
            );
            assert!((a - b).abs() <= b / 32.0 + 1.0, "{k:?} q{q}: {a} vs {b}");
        }
    }
    // A second read with nothing new adds nothing.
    let mut tr = LatencyTracker::new(&base);
    tr.advance(&kernel, &slots, &mut LatencyTable::default());
    let mut again = LatencyTable::default();
    tr.advance(&kernel, &slots, &mut again);
    assert!(again.count_by_tier.is_empty());
}
