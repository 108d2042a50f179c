//! Tests of the parent module.

use super::*;
use crate::testutil::comm;
use crate::{
    model::event::{DemoteBatch, FaultClass, MigrateReason, PromoteDecision, Verdict},
    model::schema::{self, Cause, RefusalCause},
};

fn step(src: Option<u32>, cand: i64, verdict: Verdict) -> PromoteDecision {
    PromoteDecision {
        ts_ns: 1,
        pid: 9,
        src_nid: src,
        dst_cpu: Some(0),
        dst_nid: None,
        candidate_pages: cand,
        verdict,
    }
}

#[test]
fn decisions_split_threshold_from_placement() {
    let t = crate::testutil::two_tier_map();
    assert_eq!(t.top_tier(), Some(4));
    let mut d = Decisions::default();
    d.add(&step(Some(1), 0, Verdict::RefusedThreshold), &t);
    d.add(&step(Some(0), 0, Verdict::RefusedThreshold), &t);
    d.add(&step(Some(1), 1, Verdict::RefusedRateLimit), &t);
    d.add(&step(Some(1), 1, Verdict::Approved), &t);
    d.add(&step(None, 0, Verdict::Prepared), &t);
    d.add(&step(None, 0, Verdict::RefusedTargetFull), &t);
    assert_eq!(d.approved, 1);
    assert_eq!(d.prepared, 1);
    assert_eq!(d.candidate_pages, 2);
    assert_eq!(d.refused.get(&RefusalCause::Threshold), Some(&1));
    assert_eq!(d.refused.get(&RefusalCause::Placement), Some(&1));
    assert_eq!(d.refused.get(&RefusalCause::RateLimit), Some(&1));
    assert_eq!(d.refused.get(&RefusalCause::TargetFull), Some(&1));
    assert_eq!(d.refused_total(), 4);
    assert_eq!(d.refused_by_pid.get(&9), Some(&4));
    let mut m = Decisions::default();
    m.merge(&d);
    m.merge(&d);
    assert_eq!(m.refused_total(), 8);
    assert_eq!(m.candidate_pages, 4);
    let v = m.to_model(&None);
    assert_eq!(v.refused[&RefusalCause::Isolation], 0);
    assert_eq!(v.refused[&RefusalCause::RateLimit], 2);
    assert!(v.avail.available);
    let v = Decisions::default().to_model(&Some("fentry refused".into()));
    assert!(!v.avail.available);
    assert_eq!(v.refused_total, 0);
}

#[test]
fn demotions_by_source_node() {
    let t = crate::testutil::two_tier_map();
    let mut d = DemoteByNode::default();
    for (nid, pages) in [(Some(0), 32), (Some(0), 31), (None, 5)] {
        d.add(&DemoteBatch {
            ts_ns: 0,
            pid: 1,
            src_nid: nid,
            pages,
        });
    }
    let v = d.to_model(&None, &t);
    assert_eq!(v.batches, 3);
    assert_eq!(v.pages, 68);
    assert_eq!(v.by_source_node["node0"].pages, 63);
    assert_eq!(v.by_source_node["node0"].tier, "tier4");
    assert_eq!(v.by_source_node["unknown"].pages, 5);
}

#[test]
fn causes_follow_reason_and_reclaimer() {
    assert_eq!(
        cause(MigrateReason::Demotion, &comm("kswapd0")).name(),
        "kswapd"
    );
    assert_eq!(
        cause(MigrateReason::Demotion, &comm("khugepaged")).name(),
        "khugepaged"
    );
    assert_eq!(
        cause(MigrateReason::Demotion, &comm("stress")).name(),
        "direct"
    );
    assert_eq!(
        cause(MigrateReason::NumaMisplaced, &comm("app")).name(),
        "numa_balancing"
    );
    assert_eq!(
        cause(MigrateReason::Syscall, &comm("app")).name(),
        "syscall"
    );
    assert_eq!(
        cause(MigrateReason::Damon, &comm("kdamond.0")).name(),
        "damon"
    );
}

#[test]
fn directions_by_tier_id() {
    assert_eq!(direction(72, 4), Direction::Promotion);
    assert_eq!(direction(4, 22), Direction::Demotion);
    assert_eq!(direction(4, 4), Direction::Lateral);
}

#[test]
fn moves_count_promotions_demotions_and_unknowns() {
    let mut m = TierMoves::default();
    m.add(
        Some(72),
        Some(4),
        10,
        MigrateReason::NumaMisplaced,
        Cause::NumaBalancing,
    );
    m.add(Some(4), Some(72), 7, MigrateReason::Demotion, Cause::Kswapd);
    m.add(None, None, 5, MigrateReason::Demotion, Cause::Direct);
    m.add(
        None,
        None,
        3,
        MigrateReason::Syscall,
        Cause::Other(MigrateReason::Syscall),
    );
    m.add(
        Some(4),
        Some(4),
        2,
        MigrateReason::Compaction,
        Cause::Other(MigrateReason::Compaction),
    );
    assert_eq!(m.promoted(), 10);
    assert_eq!(m.demoted(), 12);
    assert_eq!(m.demotions[&Cause::Direct], 5);
    assert_eq!(m.unattributed, 3);
    assert_eq!(m.lateral, 2);
    let mut j = schema::Migrations::default();
    m.fill(&mut j, &None, &None);
    assert_eq!(j.tier_pairs["tier72->tier4"], 10);
    assert_eq!(j.tier_pairs["unknown->unknown"], 8);
    let mut total = TierMoves::default();
    total.merge(&m);
    total.merge(&m);
    assert_eq!(total.promoted(), 20);
}

#[test]
fn batch_split_is_exact_for_one_pair_and_proportional_otherwise() {
    let mut b = BatchFolios::default();
    assert_eq!(b.split(10), (vec![], true));
    b.pairs.insert((Some(4), Some(72)), 3);
    assert_eq!(b.split(512), (vec![((Some(4), Some(72)), 512)], true));
    b.pairs.insert((Some(4), Some(22)), 1);
    let (parts, exact) = b.split(10);
    assert!(!exact);
    assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), 10, "nothing lost");
    assert_eq!(
        parts
            .iter()
            .find(|p| p.0 == (Some(4), Some(72)))
            .map(|p| p.1),
        Some(8)
    );
}

#[test]
fn pingpong_counts_reversals_within_the_window_only() {
    let mut t = PingPongTracker::new(1_000, 4);
    let mut pp = PingPong::default();
    t.observe(&mut pp, (0xa1, 1), 100, false, None, Some(512)); // a THP demoted
    t.observe(&mut pp, (0xa1, 1), 400, true, Some(42), Some(512)); // promoted 300 ns later: bounce
    t.observe(&mut pp, (0xa1, 1), 5_000, false, None, Some(512)); // demoted much later: no bounce
    t.observe(&mut pp, (0xa1, 1), 5_100, false, None, Some(512)); // same direction: no bounce
    t.observe(&mut pp, (0, 1), 5_200, true, Some(1), Some(1)); // no identity: ignored
    assert_eq!(
        (pp.bounces, pp.pages, pp.unknown_size),
        (1, 512, 0),
        "one folio, 512 pages"
    );
    assert_eq!(pp.by_pid.get(&42), Some(&1));
    assert!(pp.residency.equivalent(pp.residency.max(), 300));
    // Promote-then-demote is a bounce too, owned by the promoting process.
    t.observe(&mut pp, (0xb2, 9), 10_000, true, Some(7), None);
    t.observe(&mut pp, (0xb2, 9), 10_500, false, None, None);
    assert_eq!(pp.bounces, 2);
    assert_eq!(pp.unknown_size, 1, "a folio of unknown size");
    let j = pp.to_model(1.0, 0);
    assert_eq!((j.unit.as_str(), j.pages), ("folios", None));
    assert_eq!(pp.by_pid.get(&7), Some(&1));
}

#[test]
fn pingpong_table_is_bounded() {
    let mut t = PingPongTracker::new(10, 2);
    let mut pp = PingPong::default();
    t.observe(&mut pp, (1, 1), 0, true, None, Some(1));
    t.observe(&mut pp, (2, 2), 1, true, None, Some(1));
    t.observe(&mut pp, (3, 3), 5, true, None, Some(1)); // full, nothing old enough to forget
    assert_eq!(t.len(), 2);
    assert_eq!(t.table_full, 1);
    t.observe(&mut pp, (4, 4), 100, true, None, Some(1)); // old entries forgotten first
    assert!(t.len() <= 2);
    assert_eq!(t.table_full, 1);
}

#[test]
fn latency_table_by_tier_and_class() {
    let f = |lat: u64, flags: u32| crate::testutil::timed_fault(lat, flags, None, None);
    let mut t = LatencyTable::default();
    t.record(&f(1_000, cxl_trace_common::fault_flags::ALLOC), Some(4));
    t.record(&f(4_000, cxl_trace_common::fault_flags::ALLOC), Some(72));
    t.record(&f(0, 0), None); // zero latency is clamped to 1 ns, not lost
    t.record(&f(u64::MAX, 0), None); // overflow clamped to the top
    let j = t.to_model(&None);
    assert_eq!(
        j.by_tier["tier4"].by_class[&FaultClass::FirstTouch].count,
        1
    );
    assert_eq!(j.by_tier["tier72"].all.count, 1);
    assert_eq!(j.by_tier["unknown"].by_class[&FaultClass::Minor].count, 2);
    let unavailable = LatencyTable::default().to_model(&Some("fentry refused".into()));
    assert!(!unavailable.avail.available);
    assert_eq!(unavailable.avail.reason.as_deref(), Some("fentry refused"));
    let mut m = LatencyTable::default();
    m.merge(&t);
    m.merge(&t);
    assert_eq!(m.tier_total(Some(4)).len(), 2);
}

/// A RAS address without a node is placed: in a region's devdax reserve (before its first
/// online block), in a region but not onlined, outside every region, or not mapped at all.
#[test]
fn ras_addresses_without_a_node_are_placed() {
    use crate::model::rare::{FieldValue, RARE};
    let mut map = TierMap {
        pfns: PfnMap {
            pages_per_block: 1000,
            blocks: [(0, 0), (2, 1)].into_iter().collect(),
        },
        node_tier: [(0, 4), (1, 22)].into_iter().collect(),
        pte: PteFormat::x86_64(false),
        regions: vec![("region0".into(), 1500, 4000)],
    };
    let poison = |hpa: u64| crate::model::rare::RareEvent {
        ts_ns: 1,
        spec: RARE[usize::from(cxl_trace_common::raw::CXL_POISON)],
        fields: [("hpa".to_string(), FieldValue::UInt(hpa))].into(),
    };
    let place = |m: &TierMap, hpa: u64| {
        let e = m.ras_entry(&poison(hpa));
        (e.node, e.tier, e.pfn, e.placement)
    };
    assert_eq!(
        place(&map, 2500 << 12),
        (Some(1), Some(22), Some(2500), None)
    );
    assert_eq!(
        place(&map, 1600 << 12).3.as_deref(),
        Some("region0, in the devdax reserve, not system RAM")
    );
    assert_eq!(
        place(&map, 3500 << 12).3.as_deref(),
        Some("region0, not onlined as system RAM")
    );
    assert_eq!(
        place(&map, 9000 << 12).3.as_deref(),
        Some("not system RAM of any node, nor in a CXL region")
    );
    assert_eq!(
        place(&map, u64::MAX).3.as_deref(),
        Some("no host address: the DPA is not mapped by a committed region")
    );
    assert_eq!(place(&map, u64::MAX).2, None);
    map.regions.clear();
    assert_eq!(
        place(&map, 1600 << 12).3.as_deref(),
        Some("not system RAM of any node, nor in a CXL region")
    );
}
