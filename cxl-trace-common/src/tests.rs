//! Tests of the parent module.

use super::*;
use core::mem::size_of;

#[test]
fn sizes_are_multiples_of_eight() {
    // The ring buffer rounds records up to 8 bytes; keeping every record a multiple of
    // eight wastes nothing and keeps u64 fields aligned when userspace reads them in place.
    for size in [
        size_of::<EventHeader>(),
        size_of::<FaultEvent>(),
        size_of::<MigrateStartEvent>(),
        size_of::<MigrateEvent>(),
        size_of::<FaultLatencyEvent>(),
        size_of::<FolioMigrateEvent>(),
        size_of::<NumaFaultEvent>(),
        size_of::<RawTpEvent>(),
        size_of::<PromoteDecisionEvent>(),
        size_of::<DemoteBatchEvent>(),
        size_of::<MigrationPteEvent>(),
    ] {
        assert_eq!(size % 8, 0, "record size {size} is not a multiple of 8");
    }
}

#[test]
fn stat_slots_do_not_overlap() {
    let slots = [
        (stat::PRODUCED, u32::from(kind::MAX)),
        (stat::DROPPED, u32::from(kind::MAX)),
        (stat::FOLLOW_FULL, 1),
        (stat::READ_ERRORS, 1),
    ];
    let mut end = 0;
    for (start, len) in slots {
        assert!(
            start >= end,
            "slot at {start} overlaps the previous one ending at {end}"
        );
        end = start + len;
    }
    assert!(end <= stat::NR, "slots end at {end}, past NR {}", stat::NR);
}

#[test]
fn folio_size_codes_pack_beside_the_reason() {
    use folio_size::*;
    assert_eq!(
        unpack(u32::MAX),
        (None, UNKNOWN),
        "records written before sizes"
    );
    assert_eq!(unpack(8), (Some(8), UNKNOWN), "a reason alone");
    assert_eq!(unpack(pack(8, SMALL)), (Some(8), SMALL));
    assert_eq!(unpack(pack(u32::MAX, LARGE)), (None, LARGE));
    assert_eq!(
        unpack(pack(0, SMALL)),
        (Some(0), SMALL),
        "compaction is reason 0"
    );
    assert_eq!(pages(SMALL), Some(1));
    assert_eq!(pages(10), Some(512), "code 10 is order 9, a PMD THP");
    assert_eq!((pages(UNKNOWN), pages(LARGE)), (None, None));
    assert_eq!(
        KernelLayout::folio_order_offset_for("6.12.48+deb13-amd64"),
        0
    );
    assert_eq!(KernelLayout::folio_order_offset_for("6.6.0"), 0);
    assert_eq!(
        KernelLayout::folio_order_offset_for("7.3.4+deb13-amd64"),
        u32::MAX,
        "7.3's tail pages read differently: no size rather than a wrong one"
    );
    assert_eq!(KernelLayout::folio_order_offset_for("6.1.0-57-amd64"), 17);
    assert_eq!(KernelLayout::folio_order_offset_for("nonsense"), u32::MAX);
}

#[test]
fn default_layouts_match_known_kernels() {
    // 6.18 values read from tracefs on the development machine.
    assert_eq!(MigrateLayout::DEFAULT.reason, 60);
    assert_eq!(FaultLayout::DEFAULT.error_code, 24);
}

/// The kind table covers every number below `kind::MAX` and reads back.
#[test]
fn kinds_cover_every_number_and_read_back() {
    for k in 1..kind::MAX {
        let kind = Kind::from_u16(k).expect("every number below MAX is a kind");
        assert_eq!(kind as u16, k);
        assert!(kind.wire_size() >= core::mem::size_of::<EventHeader>());
    }
    assert_eq!(Kind::from_u16(0), None);
    assert_eq!(Kind::from_u16(kind::MAX), None);
    assert_eq!(Kind::ALL.len(), usize::from(kind::MAX) - 1);
    let mut names: [&str; 11] = [""; 11];
    for (i, k) in Kind::ALL.iter().enumerate() {
        names[i] = k.name();
    }
    names.sort_unstable();
    assert!(names.windows(2).all(|w| w[0] != w[1]), "names are unique");
}

#[test]
fn latency_buckets_are_log_linear_and_contiguous() {
    // Every bucket starts where the one before ends.
    let mut next = 0;
    for i in 0..lat_agg::BUCKETS {
        let (lo, w) = bucket_bounds(i);
        assert_eq!(lo, next, "bucket {i}");
        assert_eq!(latency_bucket(lo), i);
        assert_eq!(latency_bucket(lo + w - 1), i);
        if i >= 16 {
            // At most 1/16 of its lower bound wide.
            assert!(w * 16 <= lo, "bucket {i}: {lo} + {w}");
        }
        next = lo + w;
    }
    assert_eq!(next, lat_agg::MAX_NS + 1);
    assert_eq!(latency_bucket(u64::MAX), lat_agg::BUCKETS - 1);
    for v in [1u64, 2, 3, 1000, 1 << 20, (1 << 39) + 5, u64::MAX] {
        assert_eq!(log2_floor(v), 63 - v.leading_zeros());
    }
}
