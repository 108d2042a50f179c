//! Tests of the parent module.

use super::*;
use cxl_trace_common::{
    decision_stage, isolate, kind, DemoteBatchEvent, EventHeader, FaultEvent, FaultLatencyEvent,
    FolioMigrateEvent, MigrateEvent, MigrationPteEvent, NumaFaultEvent, PromoteDecisionEvent,
    RawTpEvent,
};

fn comm(s: &str) -> [u8; COMM_LEN] {
    let mut c = [0u8; COMM_LEN];
    c[..s.len()].copy_from_slice(s.as_bytes());
    c
}

fn fault(kind: u16, code: u64) -> FaultEvent {
    FaultEvent {
        hdr: EventHeader {
            ts_ns: 1_000,
            pid: 42,
            tid: 43,
            kind,
            cpu: 1,
            _reserved: 0,
        },
        address: 0x7fff_0000,
        ip: 0x4000,
        error_code: code,
        comm: comm("touch"),
    }
}

fn hdr(kind: u16) -> EventHeader {
    EventHeader {
        ts_ns: 5_000,
        pid: 7,
        tid: 8,
        kind,
        cpu: 1,
        _reserved: 0,
    }
}

fn decision(stage: u32, result: i32, cand: i64, iso: u32) -> PromoteDecisionEvent {
    PromoteDecisionEvent {
        hdr: hdr(kind::PROMOTE_DECISION),
        stage,
        result,
        src_nid: 1,
        target: 3,
        candidate_pages: cand,
        isolate: iso,
        _reserved: 0,
    }
}

#[test]
fn decision_verdicts() {
    use decision_stage::{PREPARE, SHOULD_MIGRATE};
    let cases = [
        (decision(SHOULD_MIGRATE, 1, 0, 0), Verdict::Approved),
        // Approved after passing the limiter: still approved.
        (decision(SHOULD_MIGRATE, 1, 1, 0), Verdict::Approved),
        (decision(SHOULD_MIGRATE, 0, 1, 0), Verdict::RefusedRateLimit),
        (decision(SHOULD_MIGRATE, 0, 0, 0), Verdict::RefusedThreshold),
        (decision(PREPARE, 0, 0, isolate::OK), Verdict::Prepared),
        (
            decision(PREPARE, -libc::EAGAIN, 0, isolate::FAILED),
            Verdict::RefusedIsolation,
        ),
        (
            decision(PREPARE, -libc::EAGAIN, 0, isolate::NOT_CALLED),
            Verdict::RefusedTargetFull,
        ),
        (
            decision(PREPARE, -libc::EACCES, 0, isolate::NOT_CALLED),
            Verdict::RefusedSharedExec,
        ),
    ];
    for (e, want) in cases {
        assert_eq!(verdict(&e), want, "{e:?}");
        assert_eq!(
            want.is_refusal(),
            !matches!(want, Verdict::Approved | Verdict::Prepared)
        );
    }
    let Ok(Event::Decision(d)) = decode(as_bytes(&decision(SHOULD_MIGRATE, 0, 512, 0))) else {
        panic!("decode")
    };
    assert_eq!((d.src_nid, d.dst_cpu, d.dst_nid), (Some(1), Some(3), None));
    assert_eq!(d.candidate_pages, 512);
    let Ok(Event::Decision(p)) = decode(as_bytes(&decision(PREPARE, 0, 0, isolate::OK))) else {
        panic!("decode")
    };
    assert_eq!((p.dst_cpu, p.dst_nid), (None, Some(3)));
    // Cut records are an error, not a panic.
    let raw = decision(PREPARE, 0, 0, 0);
    assert!(decode(&as_bytes(&raw)[..40]).is_err());
}

#[test]
fn decodes_demote_batch() {
    let e = DemoteBatchEvent {
        hdr: hdr(kind::DEMOTE_BATCH),
        src_nid: -1,
        nr_succeeded: 32,
    };
    let Ok(Event::Demote(d)) = decode(as_bytes(&e)) else {
        panic!("decode")
    };
    assert_eq!((d.src_nid, d.pages, d.pid), (None, 32, 7));
}

#[test]
fn decodes_fault_latency_and_classifies() {
    let mut raw = FaultLatencyEvent {
        hdr: hdr(kind::FAULT_LATENCY),
        address: 0x1000,
        latency_ns: 1234,
        alloc_pfn: 0x42,
        ret: 0,
        flags: fault_flags::ALLOC,
        numa_node: u32::MAX,
        retries: 1,
        comm: comm("app"),
    };
    let Ok(Event::FaultLatency(f)) = decode(as_bytes(&raw)) else {
        panic!("not a timed fault")
    };
    assert_eq!(f.latency_ns, 1234);
    assert_eq!(f.alloc_pfn, Some(0x42));
    assert_eq!(f.numa_node, None);
    assert_eq!(f.class(), FaultClass::FirstTouch);
    assert_eq!(f.retries, 1);
    raw.flags = fault_flags::NUMA_HINT | fault_flags::NUMA_MIGRATED;
    raw.numa_node = 1;
    raw.alloc_pfn = u64::MAX;
    let Ok(Event::FaultLatency(f)) = decode(as_bytes(&raw)) else {
        panic!("not a timed fault")
    };
    assert_eq!(f.class(), FaultClass::HintRemote);
    assert_eq!(f.numa_node, Some(1));
    assert_eq!(f.alloc_pfn, None);
    raw.flags = fault_flags::NUMA_HINT | fault_flags::NUMA_LOCAL;
    let Ok(Event::FaultLatency(f)) = decode(as_bytes(&raw)) else {
        panic!("not a timed fault")
    };
    assert_eq!(f.class(), FaultClass::HintLocal);
    raw.flags = fault_flags::ALLOC | fault_flags::GUP;
    raw.ret = VM_FAULT_MAJOR;
    let Ok(Event::FaultLatency(f)) = decode(as_bytes(&raw)) else {
        panic!("not a timed fault")
    };
    assert_eq!(f.class(), FaultClass::Major, "major wins over allocation");
    assert!(f.gup());
    raw.ret = 0;
    raw.flags = fault_flags::MAJOR | fault_flags::ALLOC;
    let Ok(Event::FaultLatency(f)) = decode(as_bytes(&raw)) else {
        panic!("not a timed fault")
    };
    assert_eq!(
        f.class(),
        FaultClass::Major,
        "I/O in an earlier retry round"
    );
    raw.flags = 0;
    raw.ret = 0;
    let Ok(Event::FaultLatency(f)) = decode(as_bytes(&raw)) else {
        panic!("not a timed fault")
    };
    assert_eq!(f.class(), FaultClass::Minor);
}

#[test]
fn decodes_folio_migration_and_numa_fault() {
    let raw = FolioMigrateEvent {
        hdr: hdr(kind::FOLIO_MIGRATE),
        src_pfn: 10,
        dst_pfn: u64::MAX,
        mapping: 0xffff_8880_0000_0001,
        index: 7,
        copy_ns: 900,
        rc: -11,
        reason: 8,
    };
    let Ok(Event::FolioMigrate(m)) = decode(as_bytes(&raw)) else {
        panic!("not a folio migration")
    };
    assert_eq!(m.src_pfn, Some(10));
    assert_eq!(m.dst_pfn, None);
    assert_eq!(m.rc, -11);
    assert_eq!(m.reason, Some(MigrateReason::Demotion));
    assert_eq!(m.copy_ns, Some(900));
    // A copy whose entry the kernel side did not see has no time, not a time of 0.
    let unseen = FolioMigrateEvent {
        copy_ns: cxl_trace_common::COPY_UNKNOWN,
        ..raw
    };
    let Ok(Event::FolioMigrate(m)) = decode(as_bytes(&unseen)) else {
        panic!("not a folio migration")
    };
    assert_eq!(m.copy_ns, None);
    let raw = MigrationPteEvent {
        hdr: hdr(kind::MIGRATION_PTE),
        addr: 0x7f00_0000_1000,
        old_entry: u64::MAX,
        new_entry: 0x1067,
        unmapped_ns: 0,
        order: 9,
        reason: 3,
        pmd: 1,
        _reserved: 0,
    };
    let Ok(Event::MigrationPte(p)) = decode(as_bytes(&raw)) else {
        panic!("not a migration PTE")
    };
    assert_eq!((p.old_entry, p.new_entry, p.order), (None, 0x1067, 9));
    assert!(p.pmd);
    assert_eq!(p.reason, Some(MigrateReason::Syscall));
    let raw = NumaFaultEvent {
        hdr: hdr(kind::NUMA_FAULT),
        mem_node: 1,
        pages: 1,
        flags: 0x01 | 0x08,
        last_cpupid: 0,
    };
    let Ok(Event::NumaFault(n)) = decode(as_bytes(&raw)) else {
        panic!("not a NUMA fault")
    };
    assert!(n.migrated() && n.local() && !n.migrate_failed());
    assert_eq!(n.mem_node, 1);
}

#[test]
fn decodes_raw_records_cut_to_their_length() {
    let mut raw = RawTpEvent {
        hdr: hdr(kind::RAW_TP),
        tp: 3,
        len: 16,
        _reserved: 0,
        data: [0u8; cxl_trace_common::raw::DATA],
    };
    raw.data[8] = 5;
    let bytes = as_bytes(&raw);
    let Ok(Event::Raw(r)) = decode(bytes) else {
        panic!("not a raw record")
    };
    assert_eq!((r.tp, r.data.len(), r.data[8]), (3, 16, 5));
    // A record shorter than its claimed length is an error, not a panic.
    raw.len = 300;
    assert!(matches!(
        decode(as_bytes(&raw)[..40].as_ref()),
        Err(DecodeError::Short { .. })
    ));
}

#[test]
fn decodes_user_fault() {
    let raw = fault(kind::FAULT_USER, 6);
    let ev = decode(as_bytes(&raw)).expect("decode");
    let Event::Fault(f) = ev else {
        panic!("not a fault: {ev:?}")
    };
    assert_eq!(f.pid, 42);
    assert_eq!(f.tid, 43);
    assert_eq!(f.cpu, 1);
    assert_eq!(f.mode, FaultMode::User);
    assert_eq!(f.address, 0x7fff_0000);
    assert_eq!(f.comm.as_string(), "touch");
    assert_eq!(f.kind(), FaultKind::WriteNotPresent);
    assert_eq!(ev.ts_ns(), 1_000);
}

#[test]
fn decodes_kernel_fault() {
    let raw = fault(kind::FAULT_KERNEL, 0);
    let Ok(Event::Fault(f)) = decode(as_bytes(&raw)) else {
        panic!("decode")
    };
    assert_eq!(f.mode, FaultMode::Kernel);
    assert_eq!(f.kind(), FaultKind::ReadNotPresent);
}

#[test]
fn classifies_error_codes() {
    assert_eq!(
        FaultKind::from_x86_error_code(0x4),
        FaultKind::ReadNotPresent
    );
    assert_eq!(
        FaultKind::from_x86_error_code(0x6),
        FaultKind::WriteNotPresent
    );
    assert_eq!(
        FaultKind::from_x86_error_code(0x7),
        FaultKind::WriteProtection
    );
    assert_eq!(
        FaultKind::from_x86_error_code(0x5),
        FaultKind::ReadProtection
    );
    assert_eq!(
        FaultKind::from_x86_error_code(0x15),
        FaultKind::InstructionFetch
    );
    assert_eq!(FaultKind::from_x86_error_code(0xd), FaultKind::ReservedBit);
    assert_eq!(
        FaultKind::from_x86_error_code(0x27),
        FaultKind::ProtectionKey
    );
}

#[test]
fn decodes_migrate_batch() {
    let raw = MigrateEvent {
        hdr: EventHeader {
            ts_ns: 5,
            pid: 1,
            tid: 2,
            kind: kind::MIGRATE,
            cpu: 0,
            _reserved: 0,
        },
        succeeded: 512,
        failed: 3,
        thp_succeeded: 1,
        thp_failed: 0,
        thp_split: 0,
        large_folio_split: 0,
        mode: 0,
        reason: 9,
        comm: comm("kcompactd0"),
    };
    let Ok(Event::Migrate(m)) = decode(as_bytes(&raw)) else {
        panic!("decode")
    };
    assert_eq!(m.succeeded, 512);
    assert_eq!(m.failed, 3);
    assert_eq!(m.reason, MigrateReason::Damon);
    assert_eq!(m.comm.as_string(), "kcompactd0");
}

#[test]
fn rejects_short_and_unknown() {
    assert!(matches!(
        decode(&[0u8; 8]),
        Err(DecodeError::Short { kind: 0, .. })
    ));
    let raw = fault(kind::FAULT_USER, 0);
    let bytes = as_bytes(&raw);
    assert!(matches!(
        decode(&bytes[..40]),
        Err(DecodeError::Short {
            kind: 1,
            len: 40,
            need: 64
        })
    ));
    let mut unknown = raw;
    unknown.hdr.kind = 999;
    assert_eq!(
        decode(as_bytes(&unknown)),
        Err(DecodeError::UnknownKind(999))
    );
}

#[test]
fn reason_names() {
    assert_eq!(MigrateReason::from_raw(0).name(), "compaction");
    assert_eq!(MigrateReason::from_raw(3).name(), "syscall");
    assert_eq!(MigrateReason::from_raw(8).name(), "demotion");
    assert_eq!(MigrateReason::from_raw(42).name(), "reason_42");
}

#[test]
fn comm_without_nul_uses_all_bytes() {
    let c = Comm(*b"0123456789abcdef");
    assert_eq!(c.as_string(), "0123456789abcdef");
}
