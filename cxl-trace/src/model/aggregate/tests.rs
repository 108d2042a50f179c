//! Tests of the parent module.

use super::*;
use crate::model::event::{Comm, MigrateStart};

fn json(w: schema::Window) -> serde_json::Value {
    serde_json::to_value(w).expect("a window serialises")
}

fn fault(pid: u32, mode: FaultMode, code: u64) -> Event {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"proc");
    Event::Fault(Fault {
        ts_ns: 1,
        pid,
        tid: pid,
        cpu: 0,
        comm: Comm(comm),
        mode,
        address: 0,
        ip: 0,
        error_code: code,
    })
}

fn batch(tid: u32, ts: u64, reason: u32, ok: u64, failed: u64) -> Event {
    Event::Migrate(MigrateBatch {
        ts_ns: ts,
        pid: tid,
        tid,
        cpu: 0,
        comm: Comm::default(),
        succeeded: ok,
        failed,
        thp_succeeded: 0,
        thp_failed: 0,
        thp_split: 0,
        large_folio_split: 0,
        mode: 0,
        reason: MigrateReason::from_raw(reason),
    })
}

fn start(tid: u32, ts: u64, reason: u32) -> Event {
    Event::MigrateStart(MigrateStart {
        ts_ns: ts,
        pid: tid,
        tid,
        cpu: 0,
        comm: Comm::default(),
        mode: 0,
        reason: MigrateReason::from_raw(reason),
    })
}

#[test]
fn empty_window_is_all_zero() {
    let mut a = Aggregator::new();
    let iv = a.end_interval();
    let v = json(window(
        LineKind::Interval,
        1.0,
        1.0,
        &iv,
        &Drops::default(),
        &BTreeMap::new(),
        10,
    ));
    assert_eq!(v["faults"]["total"], 0);
    assert_eq!(v["drops"]["total"], 0);
    assert_eq!(v["migrations"]["batch_latency_ns"]["count"], 0);
    assert_eq!(v["processes"].as_array().map(Vec::len), Some(0));
}

#[test]
fn counts_faults_by_mode_kind_and_process() {
    let mut a = Aggregator::new();
    for _ in 0..3 {
        a.ingest(&fault(10, FaultMode::User, 6));
    }
    a.ingest(&fault(10, FaultMode::Kernel, 2));
    a.ingest(&fault(20, FaultMode::User, 7));
    let iv = a.end_interval();
    assert_eq!(iv.faults.total, 5);
    assert_eq!(iv.faults.user, 4);
    assert_eq!(iv.faults.kernel, 1);
    assert_eq!(iv.faults.by_kind[1], 4, "write_not_present");
    assert_eq!(iv.faults.by_kind[2], 1, "write_protection");
    let top = iv.top_processes(1);
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].pid, 10);
    assert_eq!(top[0].faults, 4);
    assert_eq!(top[0].kernel, 1);
    assert_eq!(top[0].comm, "proc");
}

#[test]
fn intervals_add_up_to_run() {
    let mut a = Aggregator::new();
    a.ingest(&fault(1, FaultMode::User, 0));
    let first = a.end_interval();
    a.ingest(&fault(1, FaultMode::User, 0));
    a.ingest(&fault(2, FaultMode::Kernel, 0));
    let second = a.end_interval();
    assert_eq!(first.faults.total, 1);
    assert_eq!(second.faults.total, 2);
    assert_eq!(a.run().faults.total, 3);
    assert_eq!(a.run().processes[&1].faults.total, 2);
    assert_eq!(a.interval().faults.total, 0);
}

#[test]
fn migrations_by_reason_with_latency() {
    let mut a = Aggregator::new();
    a.ingest(&start(7, 1_000, 0));
    a.ingest(&batch(7, 4_000, 0, 100, 2));
    a.ingest(&batch(8, 5_000, 3, 50, 0)); // start not seen: counted, no latency
    let iv = a.end_interval();
    let c = &iv.migrations.by_reason[&MigrateReason::Compaction];
    assert_eq!((c.batches, c.pages_succeeded, c.pages_failed), (1, 100, 2));
    assert_eq!(iv.migrations.total().pages_succeeded, 150);
    assert_eq!(iv.migrations.batch_latency.len(), 1);
    assert!(iv
        .migrations
        .batch_latency
        .equivalent(iv.migrations.batch_latency.max(), 3_000));
    let v = json(window(
        LineKind::Interval,
        0.0,
        1.0,
        &iv,
        &Drops::default(),
        &BTreeMap::new(),
        5,
    ));
    assert_eq!(
        v["migrations"]["by_reason"]["compaction"]["pages_failed"],
        2
    );
    assert_eq!(v["migrations"]["by_reason"]["syscall"]["batches"], 1);
    assert_eq!(v["migrations"]["pages_succeeded"], 150);
}

#[test]
fn extreme_latencies_are_clamped_not_lost() {
    let mut a = Aggregator::new();
    a.ingest(&start(1, 0, 0));
    a.ingest(&batch(1, u64::MAX, 0, 1, 0));
    a.ingest(&start(2, 5, 0));
    a.ingest(&batch(2, 5, 0, 1, 0)); // zero duration
    let iv = a.end_interval();
    assert_eq!(iv.migrations.batch_latency.len(), 2);
    assert!(iv.migrations.batch_latency.max() >= MAX_LATENCY_NS);
    assert_eq!(iv.migrations.batch_latency.min(), 1);
}

fn folio(tid: u32, ts: u64, src_pfn: u64, dst_pfn: u64, key: (u64, u64)) -> Event {
    Event::FolioMigrate(crate::model::event::FolioMigrate {
        ts_ns: ts,
        pid: tid,
        tid,
        cpu: 0,
        src_pfn: Some(src_pfn),
        dst_pfn: Some(dst_pfn),
        mapping: key.0,
        index: key.1,
        copy_ns: Some(500),
        pages: None,
        rc: 0,
        reason: None,
    })
}

/// Node 0 (tier 4) holds pfns 0..1000, node 1 (tier 72) pfns 1000..2000.
fn two_tiers() -> Aggregator {
    Aggregator::with_context(
        crate::testutil::two_tier_map(),
        RareDecoder::default(),
        Availability::default(),
    )
}

/// The x86_64 migration entry pointing to `pfn`: `(~pfn << 14 >> 5) | (type 30 << 59)`.
fn migration_entry(pfn: u64) -> u64 {
    ((!pfn) << 14 >> 5) | (30 << 59)
}

fn pte_event(tid: u32, ts: u64, old: Option<u64>, new_pfn: u64) -> Event {
    Event::MigrationPte(crate::model::event::MigrationPte {
        ts_ns: ts,
        pid: tid,
        tid,
        cpu: 0,
        addr: 0x7f00_0000_0000 + ts * 4096,
        old_entry: old.map(migration_entry),
        new_entry: (new_pfn << 12) | 0x67,
        unmapped_ns: 10,
        order: 0,
        reason: Some(MigrateReason::Syscall),
        pmd: false,
    })
}

#[test]
fn migration_pte_events_attribute_batches_without_copy_time() {
    let mut a = two_tiers();
    a.ingest(&start(7, 0, 3));
    a.ingest(&pte_event(7, 1, Some(10), 1010));
    a.ingest(&pte_event(7, 2, Some(11), 1011));
    // Stayed where it was: not a move.
    a.ingest(&pte_event(7, 3, Some(12), 12));
    a.ingest(&batch(7, 10, 3, 2, 1));
    let iv = a.end_interval();
    let m = &iv.tiers.moves;
    assert_eq!(m.pairs.get(&(Some(4), Some(72))), Some(&2));
    assert_eq!((m.folios, m.folio_failures, m.unmapped_pfns), (2, 1, 0));
    assert_eq!(m.copy_latency.len(), 0, "no copy time from the fallback");
    assert_eq!(m.exact_batches, 1);
}

#[test]
fn batches_are_attributed_to_tier_pairs_by_their_folios() {
    let mut a = two_tiers();
    // A demotion batch of 3 folios, 514 pages (one is a THP): all tier4 -> tier72.
    a.ingest(&start(9, 0, 8));
    for i in 0..3 {
        a.ingest(&folio(9, 10 + i, 5 + i, 1005 + i, (0xa1, i)));
    }
    let mut demote = batch(9, 100, 8, 514, 0);
    if let Event::Migrate(m) = &mut demote {
        m.comm = Comm(*b"kswapd0\0\0\0\0\0\0\0\0\0");
    }
    a.ingest(&demote);
    // The same page comes back by NUMA balancing 1 us later: a promotion and a bounce.
    a.ingest(&start(10, 1_000, 5));
    a.ingest(&folio(10, 1_100, 1005, 7, (0xa1, 0)));
    a.ingest(&batch(10, 1_200, 5, 1, 0));
    // A syscall batch without folio events (hook absent): unattributed.
    a.ingest(&batch(11, 2_000, 3, 16, 0));
    let iv = a.end_interval();
    let m = &iv.tiers.moves;
    assert_eq!(m.demotions.get(&schema::Cause::Kswapd), Some(&514));
    assert_eq!(m.promotions.get(&schema::Cause::NumaBalancing), Some(&1));
    assert_eq!(m.pairs.get(&(Some(4), Some(72))), Some(&514));
    assert_eq!(m.pairs.get(&(Some(72), Some(4))), Some(&1));
    assert_eq!(m.unattributed, 16);
    assert_eq!((m.exact_batches, m.apportioned_batches), (2, 0));
    assert_eq!(iv.tiers.pingpong.bounces, 1);
    assert_eq!(iv.tiers.pingpong.by_pid.get(&10), Some(&1));
    // Per process: the reclaimer demoted, the faulting task promoted; the unattributed
    // syscall batch moved nothing up or down.
    assert_eq!(
        (iv.processes[&9].promoted, iv.processes[&9].demoted),
        (0, 514)
    );
    assert_eq!(
        (iv.processes[&10].promoted, iv.processes[&10].demoted),
        (1, 0)
    );
    assert_eq!(
        (iv.processes[&11].promoted, iv.processes[&11].demoted),
        (0, 0)
    );
    let v = json(a.window(
        LineKind::Interval,
        0.0,
        1.0,
        &iv,
        &Drops::default(),
        &BTreeMap::new(),
        5,
    ));
    assert_eq!(
        v["migrations"]["promotions"]["by_cause"]["numa_balancing"],
        1
    );
    assert_eq!(v["migrations"]["tier_pairs"]["tier4->tier72"], 514);
    assert_eq!(v["pingpong"]["bounces"], 1);
    assert_eq!(v["migrations"]["per_folio"]["folios"], 4);
}

#[test]
fn fault_latency_is_tagged_with_the_tier_of_the_page() {
    let mut a = two_tiers();
    let f = |pfn: Option<u64>, node: Option<u32>, flags: u32| {
        Event::FaultLatency(crate::testutil::timed_fault(2_000, flags, pfn, node))
    };
    use cxl_trace_common::fault_flags::{ALLOC, NUMA_HINT};
    a.ingest(&f(Some(1500), None, ALLOC)); // new page on node 1
    a.ingest(&f(None, Some(0), NUMA_HINT)); // hint fault, page now on node 0
    a.ingest(&f(None, None, 0)); // minor fault on a page of unknown node
    a.ingest(&f(Some(999_999), None, ALLOC)); // pfn outside every block
    let iv = a.end_interval();
    let by = &iv.tiers.latency.count_by_tier;
    assert_eq!(by.get(&Some(72)), Some(&1));
    assert_eq!(by.get(&Some(4)), Some(&1));
    assert_eq!(by.get(&None), Some(&2));
}

#[test]
fn histogram_bounds_are_valid() {
    let h = new_histogram();
    assert_eq!(h.high(), MAX_LATENCY_NS);
    assert_eq!(h.sigfig(), 3);
}

#[test]
fn drops_sum() {
    let mut d = Drops::default();
    d.by_kind.insert("fault_user".into(), 3);
    d.by_kind.insert("migrate".into(), 4);
    assert_eq!(d.total(), 7);
}

/// Why a measurement is unavailable is said in the summary, not in every interval line;
/// whether it is, in both.
#[test]
fn interval_lines_leave_the_reasons_out() {
    let why = Some("fentry refused".to_string());
    let avail = crate::model::tiers::Availability {
        latency: why.clone(),
        folio: None,
        copy: why.clone(),
        numa: why.clone(),
        decision: why.clone(),
        demote: why,
    };
    let mut a = Aggregator::with_context(
        TierMap::default(),
        crate::model::rare::RareDecoder::new(Vec::new()),
        avail,
    );
    let iv = a.end_interval();
    let line = |kind| a.window(kind, 1.0, 1.0, &iv, &Drops::default(), &BTreeMap::new(), 10);
    let (interval, summary) = (line(LineKind::Interval), line(LineKind::Summary));
    for w in [&interval, &summary] {
        assert!(!w.fault_latency.avail.available);
        assert!(!w.numa_hint_faults.avail.available);
        assert!(!w.promotion_decisions.avail.available);
        assert!(!w.demotion_batches.avail.available);
    }
    let text = |w: &crate::model::schema::Window| serde_json::to_string(w).expect("json");
    assert!(
        !text(&interval).contains("fentry refused"),
        "{}",
        text(&interval)
    );
    assert_eq!(text(&summary).matches("fentry refused").count(), 5);
}
